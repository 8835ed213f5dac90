from membersync.cli.main import main

main()
