//! skillsandbox-audit
