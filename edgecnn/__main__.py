from edgecnn.cli import console

console()
