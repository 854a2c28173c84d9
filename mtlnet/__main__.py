from mtlnet.cli import main

main()
