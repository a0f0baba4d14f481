//! upiflow web UI and JSON API (built in its own issue).
