// Runs once, on an empty data directory (/docker-entrypoint-initdb.d of the mongo image): one user
// per service, with readWrite on its own database bejo_<service> and nothing else. Passwords come
// from the environment (secrets/mongodb.env, written by gen-secrets.py).
for (const service of ["catalog", "orders", "payments", "notifications"]) {
  const name = `bejo_${service}`;
  db.getSiblingDB(name).createUser({
    user: service,
    pwd: process.env[`${service.toUpperCase()}_DB_PASSWORD`],
    roles: [{ role: "readWrite", db: name }],
  });
}
