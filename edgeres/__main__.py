from edgeres.cli import main

main()
