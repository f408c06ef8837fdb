"""bejo's shared service kit: settings, logging, bus, outbox, inbox, Mongo, HTTP app, auth."""
