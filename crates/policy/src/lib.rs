//! skillsandbox-policy
