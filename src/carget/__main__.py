from carget.cli import main

main()
