namespace Poold.Auth;

/// <summary>A SCRAM exchange failed: malformed message, or a proof or signature that does not match.</summary>
internal sealed class ScramException(string message) : Exception(message);
