from pgha.cli import main

main()
