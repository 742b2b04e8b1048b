"""Update rules, their versions and files, and the test devices that receive pending versions."""
