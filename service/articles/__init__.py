"""Articles: what the site published, from its feed or its CMS."""
