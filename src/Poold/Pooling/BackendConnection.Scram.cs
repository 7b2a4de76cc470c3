using Poold.Auth;

namespace Poold.Pooling;

/// <summary>
/// The client half of a SCRAM-SHA-256(-PLUS) login to a backend, step by step as the messages arrive: with the password,
/// or with the ClientKey a client proved (auth_query, or a SCRAM verifier in pool_passwd).
/// </summary>
internal sealed class ScramClientSteps(StoredCredential credential, byte[]? channelBindingHash)
{
    private readonly ScramClientExchange _exchange = credential.ClientKey is { } key
        ? new(key, channelBindingHash)
        : new(credential.Password!.Reveal(), channelBindingHash);

    /// <summary>True once the server's signature has been verified.</summary>
    public bool Completed { get; private set; }

    public (string Mechanism, byte[] ClientFirst) Start(IReadOnlyList<string> offered)
    {
        var mechanism = _exchange.ChooseMechanism(offered);
        return (mechanism, _exchange.ClientFirstMessage());
    }

    public byte[] Continue(ReadOnlySpan<byte> serverFirst) => _exchange.HandleServerFirst(serverFirst);

    public void Finish(ReadOnlySpan<byte> serverFinal)
    {
        _exchange.VerifyServerFinal(serverFinal);
        Completed = true;
    }
}
