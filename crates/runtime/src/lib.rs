//! skillsandbox-runtime
