"""Authentication, passwords, field encryption and role permissions."""
