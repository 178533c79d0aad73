//! Embedded state: secret store, journal, audit log, inventory (see issue: state).
