"""Settings, the local service launcher, Maven-resolved jars, index templates, production compose."""
