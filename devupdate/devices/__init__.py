"""What phones talk to: update checks, downloads, log uploads, and the inventory of devices seen."""
