from imagegate.cli import app

app()
