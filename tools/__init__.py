"""Tools shipped with devupdate: devupdate-upload (console script), phone simulator, benchmarks."""
