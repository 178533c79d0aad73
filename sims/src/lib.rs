//! Vendor simulators (see issue: simulators).
