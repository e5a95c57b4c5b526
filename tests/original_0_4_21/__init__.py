# A package only so that its conftest.py is imported under its own name, not as a second "conftest".
