//! skillsandbox-mcp
