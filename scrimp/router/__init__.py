"""Model routing: the gateway's router stage, and the learned router's training and evaluation."""
