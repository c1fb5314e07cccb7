"""What goes into the network: finding images and their labels (discover), decoding them (decode)."""
