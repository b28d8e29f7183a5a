from luzia.cli.main import program

program()
