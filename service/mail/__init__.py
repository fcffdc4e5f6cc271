"""Email: templates rendered once, CSS inlined once, MIME built and sent over SMTP."""
