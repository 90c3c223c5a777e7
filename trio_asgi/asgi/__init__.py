"""The ASGI side: scopes and the receive()/send() state machines for one app call."""
