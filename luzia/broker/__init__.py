"""The broker: owner of job state, the priority queue and the load balancer."""
