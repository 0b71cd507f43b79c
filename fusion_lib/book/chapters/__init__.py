"""Each notebook's content: the tables and figures its cells show, one module per question, over the
studies of ``fusion_lib.studies``."""
