"""Your own images: the book's study on an ImageFolder and the self-contained page that reports it,
opening with what to use (``report``; ``python -m fusion_lib.book report FOLDER --out DIR``)."""
