namespace Poold.Pooling;

/// <summary>How a backend asked Poold to authenticate when the connection was opened.</summary>
internal enum BackendAuthMethod
{
    Trust,
    Cleartext,
    Md5,
    ScramSha256,
}

/// <summary>Supplies the credential for a backend login, when the backend asks for one; null means "none available".</summary>
internal delegate ValueTask<Poold.Auth.StoredCredential?> PasswordSource(BackendAuthMethod method, CancellationToken cancellationToken);
