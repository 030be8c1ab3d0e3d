from cellbox.workers.python.worker import main

main()
