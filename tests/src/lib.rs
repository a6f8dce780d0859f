//! Test harness: starts real `strata` processes (and etcd) on ephemeral ports.
