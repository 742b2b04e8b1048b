from devupdate.cli import main

main()
