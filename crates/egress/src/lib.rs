//! skillsandbox-egress
