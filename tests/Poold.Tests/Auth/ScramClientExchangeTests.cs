using System.Text;
using Poold.Auth;

namespace Poold.Tests.Auth;

public class ScramClientExchangeTests
{
    // RFC 7677 §3: user "user", password "pencil".
    private const string ClientNonce = "rOprNGfwEbeRWgbNEkqO";
    private const string ServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    private const string ClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    private const string ServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    private static ScramClientExchange Rfc() => new("pencil", channelBindingHash: null, ClientNonce, user: "user");

    [Test]
    public void Exchange_Rfc7677Vector_IsReproducedExactly()
    {
        var client = Rfc();
        Assert.That(client.ChooseMechanism(["SCRAM-SHA-256"]), Is.EqualTo("SCRAM-SHA-256"));
        Assert.That(Encoding.UTF8.GetString(client.ClientFirstMessage()), Is.EqualTo("n,,n=user,r=" + ClientNonce));
        Assert.That(Encoding.UTF8.GetString(client.HandleServerFirst(Encoding.UTF8.GetBytes(ServerFirst))), Is.EqualTo(ClientFinal));
        Assert.DoesNotThrow(() => client.VerifyServerFinal(Encoding.UTF8.GetBytes(ServerFinal)));
    }

    [Test]
    public void VerifyServerFinal_WrongSignature_Throws()
    {
        var client = Rfc();
        client.ChooseMechanism(["SCRAM-SHA-256"]);
        client.ClientFirstMessage();
        client.HandleServerFirst(Encoding.UTF8.GetBytes(ServerFirst));
        Assert.That(() => client.VerifyServerFinal("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="u8),
            Throws.InstanceOf<ScramException>().With.Message.Contains("server signature does not match"));
    }

    [Test]
    public void VerifyServerFinal_ServerError_Throws()
    {
        var client = Rfc();
        client.ChooseMechanism(["SCRAM-SHA-256"]);
        client.ClientFirstMessage();
        client.HandleServerFirst(Encoding.UTF8.GetBytes(ServerFirst));
        Assert.That(() => client.VerifyServerFinal("e=invalid-proof"u8), Throws.InstanceOf<ScramException>().With.Message.Contains("invalid-proof"));
    }

    [TestCase("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "does not extend", TestName = "HandleServerFirst_NonceNotExtended_Throws")]
    [TestCase("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "does not extend", TestName = "HandleServerFirst_ForeignNonce_Throws")]
    [TestCase("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", "iteration count", TestName = "HandleServerFirst_ZeroIterations_Throws")]
    [TestCase("r=rOprNGfwEbeRWgbNEkqOx,s=!!!,i=4096", "base64", TestName = "HandleServerFirst_BadSalt_Throws")]
    [TestCase("r=rOprNGfwEbeRWgbNEkqOx,i=4096", "lacks", TestName = "HandleServerFirst_MissingSalt_Throws")]
    [TestCase("garbage", "malformed", TestName = "HandleServerFirst_Garbage_Throws")]
    [TestCase("m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "mandatory extension", TestName = "HandleServerFirst_MandatoryExtension_Throws")]
    public void HandleServerFirst_Malformed_Throws(string serverFirst, string reason)
    {
        var client = Rfc();
        client.ChooseMechanism(["SCRAM-SHA-256"]);
        client.ClientFirstMessage();
        Assert.That(() => client.HandleServerFirst(Encoding.UTF8.GetBytes(serverFirst)),
            Throws.InstanceOf<ScramException>().With.Message.Contains(reason));
    }

    [Test]
    public void ChooseMechanism_WithTls_PrefersPlusAndBindsTheCertificate()
    {
        var hash = new byte[32];
        hash[0] = 0xAB;
        var client = new ScramClientExchange("pencil", hash, ClientNonce);
        Assert.That(client.ChooseMechanism(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]), Is.EqualTo("SCRAM-SHA-256-PLUS"));
        Assert.That(Encoding.UTF8.GetString(client.ClientFirstMessage()), Does.StartWith("p=tls-server-end-point,,n=,r="));
        var final = Encoding.UTF8.GetString(client.HandleServerFirst(Encoding.UTF8.GetBytes(ServerFirst)));
        var c = Convert.FromBase64String(final.Split(',')[0][2..]);
        Assert.That(c, Is.EqualTo(Encoding.UTF8.GetBytes("p=tls-server-end-point,,").Concat(hash).ToArray()));
    }

    [Test]
    public void ChooseMechanism_TlsButServerOffersNoPlus_SaysYes()
    {
        var client = new ScramClientExchange("pencil", new byte[32], ClientNonce);
        Assert.That(client.ChooseMechanism(["SCRAM-SHA-256"]), Is.EqualTo("SCRAM-SHA-256"));
        Assert.That(Encoding.UTF8.GetString(client.ClientFirstMessage()), Does.StartWith("y,,"));
    }

    [Test]
    public void ChooseMechanism_NothingKnown_Throws() =>
        Assert.That(() => Rfc().ChooseMechanism(["OAUTHBEARER"]), Throws.InstanceOf<ScramException>());

    [TestCase(1_000_001, TestName = "HandleServerFirst_OneAboveTheCap_Throws")]
    [TestCase(4_000_000, TestName = "HandleServerFirst_FourTimesTheCap_Throws")]
    public void HandleServerFirst_IterationsAboveCap_ThrowsBeforeDerivingAnything(int iterations)
    {
        var client = Rfc();
        client.ChooseMechanism(["SCRAM-SHA-256"]);
        client.ClientFirstMessage();
        var started = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<ScramException>(() => client.HandleServerFirst(Encoding.UTF8.GetBytes(ServerFirst.Replace("i=4096", $"i={iterations}"))));
        Assert.That(e!.Message, Does.Contain($"asks for {iterations} SCRAM iterations").And.Contain("1000000"));
        Assert.That(started.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)), "no PBKDF2 was run");
    }

    [Test]
    public void HandleServerFirst_AtTheCap_IsAccepted()
    {
        var client = Rfc();
        client.ChooseMechanism(["SCRAM-SHA-256"]);
        client.ClientFirstMessage();
        Assert.DoesNotThrow(() => client.HandleServerFirst(Encoding.UTF8.GetBytes(ServerFirst.Replace("i=4096", $"i={ScramClientExchange.MaxIterations}"))));
    }
}
