from cellbox.workers.zygote.server import main

main()
