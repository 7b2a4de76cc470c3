using System.Security.Cryptography.X509Certificates;

namespace Poold.Tls;

/// <summary>Names read from certificates, exactly as PostgreSQL reads them.</summary>
internal static class CertificateNames
{
    private const string CommonNameOid = "2.5.4.3";

    /// <summary>
    /// The subject's first CN attribute, or null when there is none. Unlike <see cref="X509NameType.SimpleName"/>, never
    /// falls back to another attribute (OU, O, e-mail): pool_hba's <c>cert</c> compares the CN and only the CN.
    /// </summary>
    public static string? CommonName(X509Certificate2 certificate)
    {
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (rdn.HasMultipleElements)
            {
                continue;
            }

            if (rdn.GetSingleElementType().Value == CommonNameOid)
            {
                return rdn.GetSingleElementValue();
            }
        }

        return null;
    }
}
