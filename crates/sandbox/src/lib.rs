//! skillsandbox-sandbox
