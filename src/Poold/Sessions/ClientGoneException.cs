namespace Poold.Sessions;

/// <summary>
/// A write to the client failed: the client left. Kept apart from I/O errors on backend connections, so a departing
/// client is never taken for a failing node.
/// </summary>
internal sealed class ClientGoneException(Exception inner) : Exception($"the client connection failed: {inner.Message}", inner);
