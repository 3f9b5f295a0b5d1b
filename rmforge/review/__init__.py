"""The review web app (`rmforge review`)."""
