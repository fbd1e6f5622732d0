// Replaced as the service is built.
