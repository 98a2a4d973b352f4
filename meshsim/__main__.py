from meshsim.cli import main

main()
