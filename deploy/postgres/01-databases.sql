-- The trading DB is POSTGRES_DB (trading); the control DB (rules, alerts, heartbeats, chaos) is separate.
CREATE DATABASE control OWNER tradeguard;
