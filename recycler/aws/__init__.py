"""Every AWS read and write the run makes, and the clients it makes them with."""
