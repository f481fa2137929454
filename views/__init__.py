"""Flask-Admin screens, one module per regulation, on the secured base view."""
