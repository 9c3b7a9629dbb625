"""Everything that ships behind the public faces (lambda_function, durable_function, AWSSession, Notification).

One module per concern; see the README's code map.
"""
