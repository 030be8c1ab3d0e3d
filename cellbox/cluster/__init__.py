"""Several cellbox nodes as one: node identity, peers, placement and forwarding."""
