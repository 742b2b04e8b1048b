"""WSUS compliance ([wsus] §1d W9): the state of every (computer, update) from the events the Windows
Update Agent reports (§3.9), and the reports per computer, update and group built from it."""
