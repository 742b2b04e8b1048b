"""WSUS client targeting ([wsus] §1d W6–W8): target groups, computers, deployments (approvals), EULA
acceptance and the auto-approval rules."""
