"""What the tests share: fakes of the outside services, environments, polling, swarm helpers."""
