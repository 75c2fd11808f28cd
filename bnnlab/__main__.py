from bnnlab.cli import main

main()
