from pgha.entry import main

main()
