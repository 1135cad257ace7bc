from clients.cli import main

main()
