using System.Text;
using Poold.Auth;

namespace Poold.Tests.Auth;

/// <summary>
/// The key PgBouncer-style SCRAM pass-through rests on: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage),
/// recovered by the server side, then used by the client side to log in elsewhere without the password.
/// </summary>
public class ScramClientKeyTests
{
    // RFC 7677 §3: user "user", password "pencil".
    private const string ClientNonce = "rOprNGfwEbeRWgbNEkqO";
    private const string ClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    private const string ServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    private const string ServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    private const string ClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    private const string ServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    private static readonly byte[] Salt = Convert.FromBase64String("W22ZaJ0SNY7soEsUEjb6gQ==");

    private static ScramVerifier Pencil() => ScramVerifier.Create("pencil", Salt, 4096);

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    /// <summary>ClientKey := HMAC(SaltedPassword, "Client Key"), computed from the password (what the client knows).</summary>
    private static byte[] PencilClientKey() => ScramSha256.ClientKey(ScramSha256.SaltedPassword(Utf8("pencil"), Salt, 4096));

    private static ScramServerExchange ServerAfterRfcProof(ScramVerifier verifier, out bool proven, out byte[] final)
    {
        var server = new ScramServerExchange(verifier, channelBindingHash: null, ServerNonce);
        server.HandleClientFirst("SCRAM-SHA-256", Utf8(ClientFirst));
        proven = server.HandleClientFinal(Utf8(ClientFinal), out final);
        return server;
    }

    [Test]
    public void ServerExchange_Rfc7677Proof_RecoversTheClientKeyOfThePassword()
    {
        var server = ServerAfterRfcProof(Pencil(), out var proven, out var final);
        Assert.That(proven, Is.True);
        Assert.That(Encoding.UTF8.GetString(final), Is.EqualTo(ServerFinal));
        Assert.That(server.ClientKey, Is.EqualTo(PencilClientKey()));
        Assert.That(ScramSha256.StoredKey(server.ClientKey!), Is.EqualTo(Pencil().StoredKey));
    }

    [Test]
    public void ClientExchange_WithTheRecoveredKey_ReproducesTheRfc7677ClientFinalAndChecksTheServer()
    {
        var server = ServerAfterRfcProof(Pencil(), out _, out _);
        using var key = new ScramClientKey(server.ClientKey!, Pencil());
        var client = new ScramClientExchange(key, channelBindingHash: null, ClientNonce, "user");
        Assert.That(client.ChooseMechanism(["SCRAM-SHA-256"]), Is.EqualTo("SCRAM-SHA-256"));
        Assert.That(Encoding.UTF8.GetString(client.ClientFirstMessage()), Is.EqualTo(ClientFirst));
        Assert.That(Encoding.UTF8.GetString(client.HandleServerFirst(Utf8(ServerFirst))), Is.EqualTo(ClientFinal));
        Assert.DoesNotThrow(() => client.VerifyServerFinal(Utf8(ServerFinal)));
        Assert.That(() => client.VerifyServerFinal(Utf8("v=" + Convert.ToBase64String(new byte[32]))), Throws.TypeOf<ScramException>());
    }

    [Test]
    public void ClientExchange_WithAKey_RefusesAServerWithAnotherSalt()
    {
        using var key = new ScramClientKey(PencilClientKey(), Pencil());
        var client = new ScramClientExchange(key, channelBindingHash: null, ClientNonce, "user");
        client.ChooseMechanism(["SCRAM-SHA-256"]);
        client.ClientFirstMessage();
        var otherSalt = ServerFirst.Replace("s=W22ZaJ0SNY7soEsUEjb6gQ==", "s=AAAAAAAAAAAAAAAAAAAAAA==", StringComparison.Ordinal);
        Assert.That(() => client.HandleServerFirst(Utf8(otherSalt)), Throws.TypeOf<ScramException>().With.Message.Contains("salt"));
        var otherIterations = ServerFirst.Replace("i=4096", "i=4097", StringComparison.Ordinal);
        Assert.That(() => client.HandleServerFirst(Utf8(otherIterations)), Throws.TypeOf<ScramException>());
    }

    [Test]
    public void ClientKey_ThatDoesNotHashToStoredKey_IsRefused() =>
        Assert.That(() => new ScramClientKey(new byte[32], Pencil()), Throws.ArgumentException);

    [Test]
    public void ClientKey_Dispose_ZeroesTheKeyAndHidesIt()
    {
        var bytes = PencilClientKey();
        var key = new ScramClientKey(bytes, Pencil());
        Assert.That(key.ToString(), Is.EqualTo("***"));
        key.Dispose();
        Assert.That(bytes, Is.All.EqualTo(0));
        Assert.That(() => _ = key.Key.Length, Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    public void RetryWith_AFreshVerifierWithTheSameSalt_ChecksTheProofAgain()
    {
        var stale = ScramVerifier.Create("old password", Salt, 4096);
        var server = ServerAfterRfcProof(stale, out var proven, out _);
        Assert.That(proven, Is.False);
        Assert.That(server.RetryWith(Pencil(), out var final), Is.True);
        Assert.That(Encoding.UTF8.GetString(final), Is.EqualTo(ServerFinal));
        Assert.That(server.ClientKey, Is.EqualTo(PencilClientKey()));
        Assert.That(server.ProvenVerifier, Is.Not.Null.And.Not.SameAs(stale));
    }

    [Test]
    public void RetryWith_AVerifierWithAnotherSalt_Fails()
    {
        var server = ServerAfterRfcProof(ScramVerifier.Create("old password", Salt, 4096), out _, out _);
        Assert.That(server.RetryWith(ScramVerifier.Create("pencil", new byte[16], 4096), out var final), Is.False);
        Assert.That(final, Is.Empty);
        Assert.That(server.ClientKey, Is.Null);
    }
}
